"""eBPF from pure Python: the bpf(2) syscall and maps (``syscall``), the sockops program (``program``), and the watch collector that loads it (``sockops``)."""
