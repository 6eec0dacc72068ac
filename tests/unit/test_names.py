"""The shared names (smpc.names): one definition, normalised in the specs, plain strings in JSON.

Each test would fail if a spec kept a raw string where the core now relies on the enum (e.g.
``spec.statistic.two_pass``), if ``to_json`` leaked an enum member into the wire format, or if
a bad name lost the one-sentence error it had before the enums.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from smpc import dp, linear, stats
from smpc.errors import InputError
from smpc.names import Backend, InferenceOutput, ModelKind, Statistic, parse


def test_a_member_is_its_string():
    assert Backend.SS == "ss" and Backend.CKKS == "ckks"
    assert {"ss": 1}[Backend.SS] == 1 and hash(Statistic.MEAN) == hash("mean")
    assert f"{Backend.CKKS}" == "ckks" and str(InferenceOutput.ENCRYPTED_SIGMOID) == (
        "encrypted-sigmoid")
    assert json.dumps([Statistic.LINREG, ModelKind.LOGISTIC]) == '["linreg", "logistic"]'


def test_statistic_groups_are_the_documented_ones():
    assert {s.value for s in Statistic if s.two_pass} == {"var", "std", "cov", "corr", "linreg"}
    assert {s.value for s in Statistic if s.bin_counts} == {"histogram", "quantiles"}
    # the order users see (CLI choices, test parametrisations) is unchanged
    assert stats.STATISTICS == ("count", "sum", "mean", "var", "std", "cov", "corr", "histogram",
                                "quantiles", "linreg")
    assert all(type(s) is str for s in stats.STATISTICS)


def test_parse_takes_only_strings_naming_a_member():
    assert parse(Backend, "ckks") is Backend.CKKS and parse(Backend, Backend.SS) is Backend.SS
    for bad in ("SS", "he", "", None, 1, ["ss"], b"ss"):
        assert parse(Backend, bad) is None, bad


def test_stat_spec_normalises_its_names_and_writes_plain_strings():
    spec = stats.StatSpec("var", ("a", "b"), backend="ckks")
    assert spec.statistic is Statistic.VAR and spec.backend is Backend.CKKS
    assert spec.passes == 2
    doc = spec.to_json()
    assert type(doc["statistic"]) is str and type(doc["backend"]) is str
    assert json.loads(json.dumps(doc))["backend"] == "ckks"
    assert stats.StatSpec.from_json(json.loads(json.dumps(doc))) == spec
    assert stats.StatSpec(Statistic.MEAN, ("a",)) == stats.StatSpec("mean", ("a",))


@pytest.mark.parametrize("field, value, message", [
    ("statistic", "median", "unknown statistic 'median'; choose one of count, sum, mean, var, "
     "std, cov, corr, histogram, quantiles, linreg"),
    ("statistic", 3, "unknown statistic 3; choose one of count"),
    ("backend", "he", "unknown backend 'he'; choose 'ss' or 'ckks'"),
    ("backend", None, "unknown backend None; choose 'ss' or 'ckks'"),
])
def test_a_bad_stat_name_is_the_same_one_sentence_error(field, value, message):
    kwargs = {"statistic": "mean", "columns": ("a",), field: value}
    with pytest.raises(InputError) as err:
        stats.StatSpec(**kwargs)
    assert str(err.value).startswith(message)


def test_inference_spec_normalises_its_names_and_writes_plain_strings():
    spec = linear.InferenceSpec("logistic", 4, 2, backend="ckks", output="encrypted-sigmoid",
                                ckks_preset="sigmoid")
    assert (spec.kind, spec.backend, spec.output) == (
        ModelKind.LOGISTIC, Backend.CKKS, InferenceOutput.ENCRYPTED_SIGMOID)
    assert spec.kind is ModelKind.LOGISTIC and spec.output is InferenceOutput.ENCRYPTED_SIGMOID
    doc = spec.to_json()
    assert [type(doc[k]) for k in ("kind", "backend", "output")] == [str, str, str]
    assert linear.InferenceSpec.from_json(json.loads(json.dumps(doc))) == spec
    model = linear.LinearModel("linear", ("x",), (1.0,))
    assert model.kind is ModelKind.LINEAR and type(model.to_json()["kind"]) is str


@pytest.mark.parametrize("field, value, message", [
    ("kind", "poisson", "model kind must be 'linear' or 'logistic', not 'poisson'"),
    ("backend", "he", "unknown backend 'he'; choose 'ss' or 'ckks'"),
    ("output", "proba", "output must be one of prediction, logit, encrypted-sigmoid"),
])
def test_a_bad_inference_name_is_the_same_one_sentence_error(field, value, message):
    kwargs = {"kind": "linear", "n_samples": 3, "n_features": 2, field: value}
    with pytest.raises(InputError) as err:
        linear.InferenceSpec(**kwargs)
    assert str(err.value) == message


def test_noise_plan_and_results_carry_plain_strings_out():
    spec = stats.StatSpec("mean", ("a",), dp=dp.DPRequest(rho=0.5, bounds={"a": (0, 1)}))
    plan = spec.noise_plan(3)
    assert plan is not None and plan.statistic is Statistic.MEAN and plan.backend is Backend.SS
    doc = plan.to_json()
    assert type(doc["statistic"]) is str and type(doc["backend"]) is str
    # finish() builds with members, a client builds from JSON: both give plain strings
    result = stats.finish(stats.StatSpec("sum", ("a",)), np.array([2.0, 3.0]), None, None)
    assert type(result.statistic) is str and type(result.backend) is str
    assert result.to_json()["statistic"] == "sum"
