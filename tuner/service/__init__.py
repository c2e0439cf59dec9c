"""What runs beside sweeps: the Ray Jobs client (``jobs``: submit and follow sweeps on a cluster), cron schedules
of sweeps (``cron``), a multi-node Ray cluster on this machine (``local_cluster``) and a cloud config's autoscaling
cluster rehearsed on this machine (``rehearsal``)."""
