import os

from hypothesis import HealthCheck, settings

# Numba compiles on first call, so the first example of a property test is slow: no deadline.
settings.register_profile(
    "ci", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile("thorough", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# The tests never reach the network, on a machine with none as on one with some: every HTTP(S) request made
# here or by a process the tests start (a training run, a notebook's kernel) goes to a proxy address that
# refuses at once, so a download that a test provokes fails in a second instead of fetching or hanging.
# 127.0.0.1 is exempt: tests/test_data.py serves its own archives there.
REFUSING_PROXY = "http://127.0.0.1:9"     # the discard port: nothing listens there
for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
    os.environ[name] = REFUSING_PROXY
for name in ("no_proxy", "NO_PROXY"):
    os.environ[name] = "127.0.0.1,localhost"
