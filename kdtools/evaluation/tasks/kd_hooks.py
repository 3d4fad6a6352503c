# lm-eval imports `!function kd_hooks.<name>` from the YAML's own folder; the functions live in
# kdtools.evaluation.hooks (one module object, so the runner's LANGUAGE setting is seen here).
from kdtools.evaluation.hooks import *  # noqa: F401,F403
