import os

# No model hub here: fail fast instead of retrying for ~45 s.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tests that are not about the learning ladder count on every annotation training the head: they run with no
# audit split and no background fine-tunes. The ladder's own tests turn both on explicitly.
os.environ.setdefault("LABELLOOP_AUDIT_SHARE", "0")
os.environ.setdefault("LABELLOOP_FINETUNE", "off")
