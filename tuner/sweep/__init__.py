"""Running a sweep: the one driver (new, resume, extend), the Tuner it assembles, the placement pre-flight, the
sweep's records (its directory, its row in the store), its summary, and the Ray Tune callbacks on the driver."""
