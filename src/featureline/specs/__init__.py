"""Typed specs of a featureline project: what the YAML says, validated, engine-free.

`project` is featureline.yaml, `features` the files under features/, `contract`
the ODCS v3 documents under contracts/. Specs know nothing of engines; the
compiler turns them into a `featureline.plan.Plan`.
"""
