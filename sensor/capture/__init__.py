"""Packet sources: pcap files and the live ring buffer."""
