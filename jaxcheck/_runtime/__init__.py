"""Process-level services: devices, processes, fingerprints, resume records,
progress and the compilation cache."""
