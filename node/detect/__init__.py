"""ARP/NDP probes (scapy) and the passive eBPF conflict watcher (bcc); see the detect issue."""
