"""Built artifacts: their formats (files, runtime, emulator graph, inspection)."""
