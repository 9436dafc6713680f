"""Sessions, direction, states, timeouts and TCP reassembly: sans-I/O, packet time only."""
