"""Raw logs to the lake: the KuaiLive-M3 data contract, validation, quarantine, the demo world."""
