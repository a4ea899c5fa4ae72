"""The spec of the generated lr x batch-size sweeps the tests write (columns lr, bs, params, loss)."""


def lr_bs_spec(name: str, family: str, csv: str) -> dict:
  return dict(name=name, family=family, csv=csv,
              config=[dict(column="lr", name="log2_lr", transform="log2"),
                      dict(column="bs", name="log2_bs", transform="log2")],
              fidelity=dict(columns=["params"], name_format="N={params:si}",
                            features=[dict(column="params", name="log10_N", transform="log10")]),
              objective=dict(column="loss", direction="min"),
              cost=dict(formula="6 * params * 1e9", unit="FLOPs"))
