"""scikit-learn models to :class:`smpc.linear.LinearModel` (a model owner's model file).

Accepted: a fitted ``LogisticRegression`` (binary) or ``LinearRegression`` (one target), alone or
as the last step of a ``Pipeline`` whose only other step is a ``StandardScaler``; or a separately
fitted ``StandardScaler`` passed as ``scaler=``.  The scaler is kept in the model
(:class:`smpc.linear.Scaler`, folded by the model owner when it runs): the model file says what
the model was trained on, and the data owner sends its raw features.

scikit-learn is optional: this module imports it only when called, and says how to install it
when it is missing.  It reads the fitted attributes only (``coef_``, ``intercept_``, ``mean_``,
``scale_``, ``feature_names_in_``); it never unpickles anything -- loading a pickle or joblib file
runs code, which the CLI (``smpc model from-sklearn``) does only for the operator's own file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from smpc.errors import InputError
from smpc.linear import LinearModel, Scaler
from smpc.names import ModelKind

__all__ = ["model_from_sklearn"]


def _sklearn() -> Any:
    try:
        from sklearn import (  # type: ignore[import-untyped]
            linear_model,
            pipeline,
            preprocessing,
        )
    except ImportError:
        raise InputError("converting a scikit-learn model needs scikit-learn "
                         "(pip install scikit-learn)") from None
    return linear_model, pipeline, preprocessing


def _scaler_of(est: Any, d: int, preprocessing: Any) -> Scaler:
    if not isinstance(est, preprocessing.StandardScaler):
        raise InputError(f"only a StandardScaler may precede the model, not "
                         f"{type(est).__name__}")
    if not hasattr(est, "n_features_in_"):
        raise InputError("the StandardScaler is not fitted")
    if int(est.n_features_in_) != d:
        raise InputError(f"the StandardScaler was fitted on {est.n_features_in_} features, the "
                         f"model on {d}")
    mean = np.zeros(d) if getattr(est, "mean_", None) is None else np.asarray(est.mean_, float)
    scale = np.ones(d) if getattr(est, "scale_", None) is None else np.asarray(est.scale_,
                                                                                float)
    return Scaler(tuple(mean.tolist()), tuple(scale.tolist()))


def model_from_sklearn(estimator: Any, features: Sequence[str] | None = None, *,
                       scaler: Any = None) -> LinearModel:
    """The :class:`LinearModel` of a fitted scikit-learn estimator.

    ``estimator``: ``LogisticRegression`` (binary: a ``logistic`` model, ``predict_proba``'s
    second column is its prediction) or ``LinearRegression`` (one target: ``linear``), or a
    ``Pipeline`` of an optional ``StandardScaler`` and one of them.  ``scaler``: a fitted
    ``StandardScaler`` applied before the estimator (not with a pipeline that has one).
    ``features``: the feature names, in the model's order -- by default the names it was
    fitted with (``feature_names_in_``, set when fitted on a pandas DataFrame).
    Raises :class:`InputError` naming what is not supported.
    """
    linear_model, pipeline, preprocessing = _sklearn()
    found = None
    if isinstance(estimator, pipeline.Pipeline):
        steps = [s for _, s in estimator.steps if s not in (None, "passthrough")]
        if not steps or len(steps) > 2:
            raise InputError("a pipeline must be an optional StandardScaler then the model")
        if len(steps) == 2:
            if scaler is not None:
                raise InputError("the pipeline has its own scaler; pass no other")
            scaler, found = steps
        else:
            found = steps[0]
        names_from = estimator
    else:
        found = names_from = estimator
    if isinstance(found, linear_model.LogisticRegression):
        kind = ModelKind.LOGISTIC
    elif isinstance(found, linear_model.LinearRegression):
        kind = ModelKind.LINEAR
    else:
        raise InputError(f"only LogisticRegression and LinearRegression can be converted, not "
                         f"{type(found).__name__}")
    if not hasattr(found, "coef_"):
        raise InputError(f"the {type(found).__name__} is not fitted")
    coef = np.asarray(found.coef_, dtype=float)
    intercept = np.atleast_1d(np.asarray(found.intercept_, dtype=float))
    if coef.ndim == 2 and coef.shape[0] == 1:
        coef = coef[0]
    if coef.ndim != 1 or intercept.size != 1:
        what = "classes" if kind == ModelKind.LOGISTIC else "targets"
        raise InputError(f"only a model with one output can be converted; this one has "
                         f"{coef.shape[0]} ({what})")
    d = coef.size
    if features is None:
        names = getattr(names_from, "feature_names_in_", None)
        if names is None and scaler is not None:
            names = getattr(scaler, "feature_names_in_", None)
        if names is None:
            raise InputError("the model was fitted without feature names: give them "
                             "(features=..., --features)")
        features = [str(n) for n in names]
    if len(features) != d:
        raise InputError(f"{len(features)} feature names for a model of {d} features")
    sc = None if scaler is None else _scaler_of(scaler, d, preprocessing)
    return LinearModel(kind, tuple(features), tuple(coef.tolist()), float(intercept[0]), sc)
