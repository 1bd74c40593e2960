"""The one compiled part: the exposure policy's greedy fill (recommender/ranking/_greedy.c).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the
install still succeeds and the policy runs its numpy implementation (same results, slower;
``recommender.ranking.policy.ACCELERATED`` says which one runs).
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "recommender.ranking._greedy",
            ["recommender/ranking/_greedy.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
