"""What the tests share that is not a fixture: the test project (settings, URLconfs, routers,
Celery app), the servers they run on loopback, and small helpers."""
