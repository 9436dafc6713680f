"""K worker processes, one ring buffer each: Python runs on K cores.

The XDP program sends each flow's records to ring ``flow_hash % K`` (both
directions share the hash), so a worker sees whole flows and no session state
is shared. Each worker is a process forked from the sensor after the program
is loaded and before it is attached; it builds its own `Sensor` assembly
(plugin runtime, bindings, session registry, pipeline) from the same config
and reads its ring from the mapping. What a worker finishes (records with
their frames and messages) and every event it publishes go back to the parent
over a pipe: the parent owns the outputs, the event bus and the session view
the API lists, so the workers are one sensor to the user.

- `worker.py`: the process body (child side).
- `pool.py`: starting, stopping and watching the workers (parent side); a
  worker that dies is reported, its ring is taken out of the program so its
  flows are bypassed in the kernel, and the others go on.
- `view.py`: the parent's view of every worker's sessions, fed by their events.
- `shard.py`: the same sharding for capture files (``read --workers K``).
"""
