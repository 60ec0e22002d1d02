"""The allow-list environment of study commands and agents: what programs need, never a secret."""

from __future__ import annotations

import string

from hypothesis import given
from hypothesis import strategies as st

from autoswarm.worker.sandbox import allowed_variable, sandbox_environment

WORKER_ENV = {
    "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "1", "OMP_NUM_THREADS": "2",
    "AUTOSWARM_TIME_BUDGET": "5", "AUTOSWARM_RESULT": "/s/r.json",
    # None of these may pass, whatever their name looks like.
    "AUTOSWARM_JOIN_TOKEN": "asj_x", "AUTOSWARM_TOKEN": "t", "AUTOSWARM_ADMIN_TOKEN": "asa_x", "AUTOSWARM_CA": "/ca",
    "AUTOSWARM_LLM_API_KEY_ENV": "OPENAI_API_KEY", "OPENAI_API_KEY": "sk-x", "GITHUB_TOKEN": "ghp_x", "HF_TOKEN": "hf",
    "AWS_SECRET_ACCESS_KEY": "y", "SSH_AUTH_SOCK": "/run/agent", "DATABASE_URL": "postgres://u:p@h/db",
    "CUDA_CACHE_TOKEN": "z", "NCCL_IB_AUTH_KEY": "k", "PYTHONPATH": "/home/v/src", "HOME": "/home/volunteer",
}


def test_only_the_allow_list_passes_and_home_and_tmpdir_are_replaced():
    assert sandbox_environment(WORKER_ENV, home="/state/homes/tiny", tmpdir="/tmp") == {
        "PATH": "/usr/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "1",
        "OMP_NUM_THREADS": "2", "AUTOSWARM_TIME_BUDGET": "5", "AUTOSWARM_RESULT": "/s/r.json",
        "HOME": "/state/homes/tiny", "TMPDIR": "/tmp"}


@given(prefix=st.sampled_from(["", "AUTOSWARM_", "CUDA_", "NCCL_", "LC_", "MY_", "OMP_"]),
       word=st.sampled_from(["TOKEN", "API_KEY", "SECRET", "PASSWORD", "CREDENTIALS", "AUTH", "SESSION_COOKIE"]),
       suffix=st.text(alphabet=string.ascii_uppercase + "_", max_size=8))
def test_no_name_that_looks_secret_ever_passes(prefix, word, suffix):
    assert not allowed_variable(prefix + word + suffix)


@given(st.text(alphabet=string.ascii_uppercase + string.digits + "_", min_size=1, max_size=30))
def test_an_unknown_name_passes_only_under_an_allowed_prefix(name):
    if allowed_variable(name):
        assert name in ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "USER", "LOGNAME", "LD_LIBRARY_PATH") \
            or name.startswith(("LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "NUMEXPR_", "NCCL_", "HIP_",
                                "ROCR_", "HSA_", "ZE_", "ONEAPI_", "PYTORCH_", "PYTHON", "AUTOSWARM_"))
