"""Linear and logistic inference: one party's model on another party's features.

The **model owner** holds ``w`` (``d`` coefficients) and the intercept ``b``;
the **data owner** holds the features ``X`` (``m x d``).  The data owner, and
only the data owner, learns the predictions ``X w + b`` (after the sigmoid for
a logistic model).

``ss`` (Beaver products, with a dealer)
    Each owner secret-shares its input with a single seed (the peer's share is
    the seed's expansion).  For the one matmul triple, each owner draws its own
    mask seed and sends it to the dealer (16 bytes), which sends back only the
    model owner's correction (its share of ``c``, ``n_samples + 40`` words): the
    dealer cannot choose, correlate or reuse the owners' masks.  The owners check
    the triple (:mod:`smpc.beaver.checking`, 40 rows: a wrong correction fails
    naming the dealer before anything is opened, except with probability
    ``2^-40``), then compute shares of ``X w`` with one Beaver opening.  The
    product is *not* truncated: it is revealed at once to the data owner at
    ``2f`` fractional bits, which saves a round and is exact up to the encoding
    error.  That needs ``|X w + b| < 2^(63-2f)`` (2.1e9 for f=16), which is
    guaranteed by two local checks before anything is sent: the data owner
    checks ``|x| <= feature_bound`` (a public parameter of the request) and the
    model owner checks ``||w||_1 * feature_bound + |b|`` against the bound.

``ckks`` (column packing, no rotations)
    The data owner is the key holder: it encrypts each feature column (samples
    across the slots) under its own key and sends the ciphertexts with a
    public context that has no secret key and no Galois keys (a node keeps its
    key pair per analyst and model owner, :mod:`smpc.ckks.keycache`, and then
    floods its own decryptions; two worker threads encrypt and send the
    columns).  The model owner computes ``sum_j w_j ct_j + b`` with plaintext
    scalars, multiplying each column in as it arrives, adds flooding noise
    of its own (so that the decryption noise cannot carry information about
    ``w`` beyond ``X w + b``), and returns the logits.  The data owner decrypts
    and applies the exact sigmoid; ``output="encrypted-sigmoid"`` has the model
    owner evaluate a degree-3 approximation under encryption instead (the
    ``sigmoid`` preset): within 0.0608 of the sigmoid on logits in [-5, 5] (plus
    the CKKS error and the flood), and refused by the model owner whenever
    ``||w||_1 feature_bound + |b|`` could leave that range (:func:`check_model`).

Scaler
    A model may carry the standardisation it was trained after (:class:`Scaler`).
    The model owner folds it into its weights before anything runs
    (:meth:`LinearModel.folded`), so the protocols, the data owner's checks (in
    its raw units) and the model owner's noise are those of a plain linear model.

What each party learns
    The model owner learns ``m`` and ``d`` (public sizes) and nothing else: it
    sees uniform Beaver openings (``ss``) or ciphertexts (``ckks``).  The data
    owner learns the predictions -- and note that exact predictions on ``d + 1``
    rows in general position determine a linear model: protecting the model
    against extraction through its outputs is a matter of the model owner's
    policy (who may ask, how often, on which rows; ``parties.privacy.models``)
    and of the noise its role adds to every logit (``noise_std`` of
    :func:`run_model_owner`: discrete Gaussian noise shares on ``ss``, the flood
    on ``ckks``).  The dealer learns nothing about inputs: it
    receives the owners' mask seeds and never an opening.  Whatever it sends, it
    cannot make one owner's masks known to the other (see :mod:`smpc.beaver`);
    it is trusted only not to collude with an owner.

Cancellation
    Both owners call :meth:`~smpc.transport.Transport.check_cancelled` between their
    steps (sharing, seed expansion, the Beaver product, each column's encryption, the
    encrypted evaluation) and before every message: an aborted role stops within one step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from smpc import beaver, ckks, sharing
from smpc.encoding import DEFAULT_FRAC_BITS, EncodingRangeError, FixedPoint
from smpc.errors import InputError, ProtocolError
from smpc.names import Backend, InferenceOutput, ModelKind, parse
from smpc.transport import Transport

MAX_FEATURES = 4096
MAX_SAMPLES = 1 << 24


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, computed without overflow for large ``|z|``."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


@dataclass(frozen=True)
class Scaler:
    """A per-feature standardisation ``(x - mean) / scale`` the model was trained after
    (scikit-learn's ``StandardScaler``: ``mean_`` and ``scale_``).

    Checked when made: as many entries as the model has features, every one finite, every
    scale positive.  It is the model owner's (part of its model file, never sent): the owner
    folds it into the weights (:meth:`LinearModel.folded`), so the protocol and what the data
    owner sends -- its raw features -- are unchanged.
    """

    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
            object.__setattr__(self, "scale", tuple(float(v) for v in self.scale))
        except (TypeError, ValueError):
            raise InputError("the model's scaler mean and scale must be lists of numbers"
                             ) from None
        if len(self.mean) != len(self.scale):
            raise InputError(f"the model's scaler has {len(self.mean)} means and "
                             f"{len(self.scale)} scales")
        if not all(math.isfinite(v) for v in (*self.mean, *self.scale)):
            raise InputError("the model's scaler mean and scale must be finite")
        bad = [j for j, v in enumerate(self.scale) if not v > 0]
        if bad:
            raise InputError(f"the model's scaler scale must be positive (entry {bad[0]} "
                             "is not)")

    def to_json(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "scale": list(self.scale)}

    @classmethod
    def from_json(cls, doc: Any) -> Scaler:
        if not isinstance(doc, dict) or set(doc) != {"mean", "scale"}:
            raise InputError('the model\'s scaler is {"mean": [...], "scale": [...]}')
        if not isinstance(doc["mean"], list) or not isinstance(doc["scale"], list):
            raise InputError("the model's scaler mean and scale must be lists of numbers")
        return cls(tuple(doc["mean"]), tuple(doc["scale"]))


@dataclass(frozen=True)
class LinearModel:
    """A linear or logistic model: ``kind``, feature names, coefficients, intercept, and
    optionally the :class:`Scaler` its coefficients apply after.

    ``kind`` may be given as a string; it is normalised to :class:`~smpc.names.ModelKind`.
    With a scaler the model computes ``sum_j w_j (x_j - mean_j) / scale_j + b`` on the raw
    features ``x``; :meth:`folded` is the same model without a scaler (what the protocols
    run), so the data owner's feature bounds and checks stay in its raw units.
    """

    kind: ModelKind
    features: tuple[str, ...]
    coefficients: tuple[float, ...]
    intercept: float = 0.0
    scaler: Scaler | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        try:
            object.__setattr__(self, "coefficients", tuple(float(c) for c in self.coefficients))
            object.__setattr__(self, "intercept", float(self.intercept))
        except (TypeError, ValueError):
            raise InputError("model coefficients and intercept must be numbers") from None
        kind = parse(ModelKind, self.kind)
        if kind is None:
            raise InputError(f"model kind must be 'linear' or 'logistic', not {self.kind!r}")
        object.__setattr__(self, "kind", kind)
        if not self.features:
            raise InputError("a model needs at least one feature")
        if len(self.features) > MAX_FEATURES:
            raise InputError(f"a model has at most {MAX_FEATURES} features")
        if len(set(self.features)) != len(self.features):
            raise InputError("a feature is named twice in the model")
        if len(self.coefficients) != len(self.features):
            raise InputError(
                f"the model names {len(self.features)} features but has "
                f"{len(self.coefficients)} coefficients"
            )
        if not all(math.isfinite(c) for c in (*self.coefficients, self.intercept)):
            raise InputError("model coefficients and intercept must be finite")
        if self.scaler is not None:
            if not isinstance(self.scaler, Scaler):
                raise InputError("the model's scaler must be a Scaler")
            if len(self.scaler.mean) != len(self.features):
                raise InputError(f"the model names {len(self.features)} features but its "
                                 f"scaler has {len(self.scaler.mean)} entries")
            self.folded()  # refuses a scaler whose folded weights are not finite

    @property
    def weights(self) -> np.ndarray:
        """The coefficients as an array (after the scaler, if the model has one)."""
        return np.asarray(self.coefficients, dtype=np.float64)

    def folded(self) -> LinearModel:
        """The same model on raw features, without a scaler: ``w'_j = w_j / scale_j`` and
        ``b' = b - sum_j w_j mean_j / scale_j`` (the model itself if it has no scaler).

        Exact up to float64 rounding (relative ``2^-53`` per weight, ``gamma(d+1)`` of
        ``|b| + sum_j |w_j mean_j / scale_j|`` on the intercept).  This is what the model owner
        runs: the protocol, its range checks, the flood and the prediction noise (on the logit,
        which folding does not change) see the folded model."""
        if self.scaler is None:
            return self
        with np.errstate(over="ignore", invalid="ignore"):
            w = self.weights / np.asarray(self.scaler.scale)
            b = self.intercept - float(np.dot(w, np.asarray(self.scaler.mean)))
        if not (np.isfinite(w).all() and math.isfinite(b)):
            raise InputError("the model's scaler folds into weights that are not finite "
                             "(a scale is too small)")
        return LinearModel(self.kind, self.features, tuple(w.tolist()), b)

    def predict_plain(self, X: np.ndarray) -> np.ndarray:
        """Plaintext reference: what the secure protocols must reproduce (on raw features)."""
        m = self.folded()
        z = np.asarray(X, dtype=np.float64) @ m.weights + m.intercept
        return sigmoid(z) if self.kind == ModelKind.LOGISTIC else z

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"kind": str(self.kind), "features": list(self.features),
                               "coefficients": list(self.coefficients),
                               "intercept": self.intercept}
        if self.scaler is not None:
            doc["scaler"] = self.scaler.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> LinearModel:
        if not isinstance(doc, dict):
            raise InputError("a model file is a JSON object")
        missing = {"kind", "features", "coefficients"} - set(doc)
        if missing:
            raise InputError(f"the model is missing {', '.join(sorted(missing))}")
        unknown = set(doc) - {"kind", "features", "coefficients", "intercept", "scaler"}
        if unknown:
            raise InputError(f"unknown model field(s): {', '.join(sorted(unknown))}")
        if not isinstance(doc["features"], list) or not isinstance(doc["coefficients"], list):
            raise InputError("model features and coefficients must be lists")
        scaler = None if doc.get("scaler") is None else Scaler.from_json(doc["scaler"])
        return cls(doc["kind"], tuple(doc["features"]), tuple(doc["coefficients"]),
                   doc.get("intercept", 0.0), scaler)


@dataclass(frozen=True)
class InferenceSpec:
    """Public parameters of one inference, known to both owners.

    ``feature_bound`` is a public bound on ``|x|`` that the data owner checks
    and the model owner relies on (``ss`` range guarantee, and the input range
    of the encrypted sigmoid).  ``ckks_preset`` left empty is ``"sigmoid"`` for
    ``output="encrypted-sigmoid"`` (the only output that needs its depth) and
    ``"aggregate"`` otherwise.  ``kind``, ``backend`` and ``output`` may be given
    as strings; they are normalised to :class:`~smpc.names.ModelKind`,
    :class:`~smpc.names.Backend` and :class:`~smpc.names.InferenceOutput`
    (:meth:`to_json` writes the strings).
    """

    kind: ModelKind
    n_samples: int
    n_features: int
    backend: Backend = Backend.SS
    feature_bound: float = 1024.0
    frac_bits: int = DEFAULT_FRAC_BITS
    output: InferenceOutput = InferenceOutput.PREDICTION
    ckks_preset: str = ""
    flood_bits: int = 16

    def __post_init__(self) -> None:
        for name in ("n_samples", "n_features", "frac_bits", "flood_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"{name} must be a whole number, got {value!r}")
        if isinstance(self.feature_bound, bool) or not isinstance(self.feature_bound,
                                                                   int | float):
            raise InputError("the feature bound must be a number")
        kind = parse(ModelKind, self.kind)
        if kind is None:
            raise InputError(f"model kind must be 'linear' or 'logistic', not {self.kind!r}")
        object.__setattr__(self, "kind", kind)
        backend = parse(Backend, self.backend)
        if backend is None:
            raise InputError(f"unknown backend {self.backend!r}; choose 'ss' or 'ckks'")
        object.__setattr__(self, "backend", backend)
        if not 1 <= self.n_samples <= MAX_SAMPLES:
            raise InputError(f"the number of samples must be between 1 and {MAX_SAMPLES}")
        if not 1 <= self.n_features <= MAX_FEATURES:
            raise InputError(f"the number of features must be between 1 and {MAX_FEATURES}")
        if not (math.isfinite(self.feature_bound) and self.feature_bound > 0):
            raise InputError("the feature bound must be a positive number")
        output = parse(InferenceOutput, self.output)
        if output is None:
            raise InputError(f"output must be one of {', '.join(o.value for o in InferenceOutput)}")
        object.__setattr__(self, "output", output)
        if output == InferenceOutput.ENCRYPTED_SIGMOID and (backend != Backend.CKKS
                                                            or kind != ModelKind.LOGISTIC):
            raise InputError("an encrypted sigmoid needs a logistic model on the ckks backend")
        if not isinstance(self.ckks_preset, str):
            raise InputError("the CKKS preset must be a name")
        if not self.ckks_preset:  # the preset with the depth the output needs
            object.__setattr__(self, "ckks_preset",
                               "sigmoid" if output == InferenceOutput.ENCRYPTED_SIGMOID
                               else "aggregate")
        if not 0 <= self.flood_bits <= 30:
            raise InputError("flood_bits must be between 0 (no flooding) and 30")
        FixedPoint(self.frac_bits)

    @property
    def codec(self) -> FixedPoint:
        return FixedPoint(self.frac_bits)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON, the names as plain strings."""
        doc = asdict(self)
        doc.update(kind=str(self.kind), backend=str(self.backend), output=str(self.output))
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> InferenceSpec:
        if not isinstance(doc, dict) or set(doc) - set(cls.__dataclass_fields__):
            raise InputError("malformed inference spec")
        try:
            return cls(**doc)
        except InputError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise InputError(f"malformed inference spec: {exc}") from None


def check_features(spec: InferenceSpec, X: np.ndarray,
                   names: Sequence[str] | None = None) -> np.ndarray:
    """The data owner's local checks: shape, finiteness and the public bound.

    A refusal names the feature (``names[j]``, or its 1-based position) and the public bound;
    only the message the data owner keeps (``str``, its own log) names the largest value, the
    one it may send (``public``) does not."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape != (spec.n_samples, spec.n_features):
        raise InputError(f"features have shape {X.shape}, the request says "
                         f"({spec.n_samples}, {spec.n_features})")

    def name(j: int) -> str:
        return repr(str(names[j])) if names is not None else f"#{j + 1}"

    finite = np.isfinite(X).all(axis=0)
    if not finite.all():
        raise InputError(f"feature {name(int(np.argmin(finite)))} has NaN or infinite values")
    within = (np.abs(X) <= spec.feature_bound).all(axis=0) if X.size else finite
    if not within.all():
        j = int(np.argmin(within))
        head = "a feature value exceeds the declared feature bound"
        advice = f"{spec.feature_bound:g} in feature {name(j)}; raise the bound " \
            "(--feature-bound) or scale the feature"
        raise EncodingRangeError(f"{head} {advice} (largest: {np.abs(X[:, j]).max():.6g})",
                                 public=f"{head} {advice}")
    return X


#: Standard deviations of prediction noise allowed for in the ``ss`` range check: a discrete
#: Gaussian exceeds 12 sigma with probability below 1e-32.
NOISE_TAIL_SIGMAS = 12.0


def check_model(spec: InferenceSpec, model: LinearModel, *, noise_std: float = 0.0) -> None:
    """The model owner's local checks: agreement with the spec and the output range (with
    ``noise_std``, the std of the noise it adds to the logits, :data:`NOISE_TAIL_SIGMAS` of it
    included).  A model with a scaler is checked folded (:meth:`LinearModel.folded`), in the
    data owner's raw units.

    For ``output="encrypted-sigmoid"`` the logits must stay in the cubic's input range
    ``[-SIGMOID_BOUND, SIGMOID_BOUND]`` = [-5, 5], where its error is at most 0.0608 (plus the
    preset's CKKS error and the flood): refused when ``||w||_1 feature_bound + |b|`` could
    leave it (outside it the cubic is not a sigmoid: -8 to 621 at logits of +-30).  The
    public message names no weight."""
    model = model.folded()
    if model.kind != spec.kind:
        raise InputError(f"the request says a {spec.kind} model, the model is {model.kind}")
    if len(model.features) != spec.n_features:
        raise InputError(f"the model has {len(model.features)} features, the request "
                         f"{spec.n_features}")
    if spec.backend == Backend.SS:
        codec = spec.codec
        ulp = codec.resolution
        worst = float(np.sum((np.abs(model.weights) + ulp) * (spec.feature_bound + ulp))
                      + abs(model.intercept) + ulp + NOISE_TAIL_SIGMAS * noise_std)
        limit = codec.max_abs(frac_bits=2 * spec.frac_bits)
        if worst >= limit:
            advice = f"for untruncated products (f={spec.frac_bits}); lower the feature " \
                "bound or the fractional bits"
            raise EncodingRangeError(
                f"a prediction could reach {worst:.6g}, beyond the fixed-point bound "
                f"{limit:.6g} {advice}",
                public=f"a prediction could exceed the fixed-point bound {advice}")
    if spec.output == InferenceOutput.ENCRYPTED_SIGMOID:
        reach = float(np.abs(model.weights).sum() * spec.feature_bound + abs(model.intercept))
        if not reach <= ckks.SIGMOID_BOUND:
            advice = f"the encrypted sigmoid is accurate only for logits in " \
                f"[-{ckks.SIGMOID_BOUND:g}, {ckks.SIGMOID_BOUND:g}]; lower the feature bound " \
                "or ask for output=prediction (the exact sigmoid, applied by the data owner)"
            raise EncodingRangeError(f"a logit could reach {reach:.6g}: {advice}",
                                     public=f"a logit could leave that range: {advice}")


# ---------------------------------------------------------------------------
# ss: Beaver products with a dealer
# ---------------------------------------------------------------------------

def _triple_request(spec: InferenceSpec) -> beaver.TripleRequest:
    return beaver.TripleRequest.matmul((spec.n_samples, spec.n_features), (spec.n_features,),
                                       checks=beaver.DEFAULT_CHECKS)


def run_dealer_ss(t: Transport, spec: InferenceSpec, *, data_owner: str, model_owner: str,
                  tag: str) -> None:
    """The dealer: one checked matmul triple for ``X @ w`` from the owners' own mask seeds
    (it sends a hello to each owner, receives their seeds, sends the model owner its
    correction; :func:`smpc.beaver.deal`)."""
    beaver.deal(t, [data_owner, model_owner], [_triple_request(spec)], f"{tag}/deal")


def run_data_owner_ss(t: Transport, spec: InferenceSpec, X: np.ndarray, *, model_owner: str,
                      dealer: str, tag: str) -> np.ndarray:
    """The data owner: returns the predictions (probabilities for a logistic model)."""
    t.check_cancelled()  # pragma: no mutate (liveness only)
    X = check_features(spec, X)
    codec = spec.codec
    parties = [t.me, model_owner]
    shared_x = sharing.share_with_seeds(codec.encode(X, what="feature"), 1, f"{tag}/x")
    t.send(model_owner, f"{tag}/x-seed", shared_x.seeds[0])
    w_seed = _recv_seed(t, model_owner, f"{tag}/w-seed")
    w_share = sharing.expand_share(w_seed, (spec.n_features,), f"{tag}/w")
    (triple,) = beaver.receive(t, dealer, parties, [_triple_request(spec)], f"{tag}/deal")
    assert isinstance(triple, beaver.TripleShare)  # a TripleRequest's share (for the checker)
    t.check_cancelled()  # pragma: no mutate (liveness only)
    z_mine = beaver.matmul(t, parties, triple, shared_x.explicit, w_share, f"{tag}/mm",
                           method="none")
    t.check_cancelled()  # pragma: no mutate (liveness only)
    z_theirs = t.recv_array(model_owner, f"{tag}/z", np.uint64, (spec.n_samples,))
    logits = codec.decode(z_mine + z_theirs, frac_bits=2 * spec.frac_bits)
    return finish_predictions(spec, logits)


def prediction_noise_ulps(spec: InferenceSpec, noise_std: float,
                          check: Callable[[], None] | None = None) -> np.ndarray:
    """The model owner's noise for ``ss``: ``n_samples`` draws of the discrete Gaussian of std
    ``noise_std`` on the untruncated product's lattice ``2^-2f`` (OpenDP's exact sampler on
    OpenSSL's CSPRNG, :func:`smpc.dp.noise.sample_discrete_gaussian`), as ring words."""
    if noise_std <= 0:
        return np.zeros(spec.n_samples, dtype=np.uint64)
    from smpc.dp.noise import sample_discrete_gaussian

    ulps = sample_discrete_gaussian(noise_std * 2.0 ** (2 * spec.frac_bits), spec.n_samples,
                                    check=check)
    return ulps.view(np.uint64)


def run_model_owner_ss(t: Transport, spec: InferenceSpec, model: LinearModel, *,
                       data_owner: str, dealer: str, tag: str, noise_std: float = 0.0) -> None:
    """The model owner: contributes ``w`` and ``b``; learns nothing.  With ``noise_std`` it adds
    Gaussian noise of that std to its share of every logit before the data owner opens it
    (:func:`prediction_noise_ulps`): the data owner learns ``X w + b + noise``."""
    t.check_cancelled()  # pragma: no mutate (liveness only)
    check_model(spec, model, noise_std=noise_std)
    model = model.folded()
    codec = spec.codec
    parties = [data_owner, t.me]
    shared_w = sharing.share_with_seeds(codec.encode(model.weights, what="coefficient"), 1,
                                        f"{tag}/w")
    t.send(data_owner, f"{tag}/w-seed", shared_w.seeds[0])
    x_seed = _recv_seed(t, data_owner, f"{tag}/x-seed")
    t.check_cancelled()  # pragma: no mutate (liveness only)
    x_share = sharing.expand_share(x_seed, (spec.n_samples, spec.n_features), f"{tag}/x")
    (triple,) = beaver.receive(t, dealer, parties, [_triple_request(spec)], f"{tag}/deal")
    assert isinstance(triple, beaver.TripleShare)  # a TripleRequest's share (for the checker)
    t.check_cancelled()  # pragma: no mutate (liveness only)
    z = beaver.matmul(t, parties, triple, x_share, shared_w.explicit, f"{tag}/mm",
                      method="none")
    z = z + codec.encode(np.full(spec.n_samples, model.intercept),
                         frac_bits=2 * spec.frac_bits, what="intercept")
    z = z + prediction_noise_ulps(spec, noise_std, t.check_cancelled)  # wraps mod 2^64
    t.send(data_owner, f"{tag}/z", z)


def _recv_seed(t: Transport, sender: str, tag: str) -> bytes:
    seed = t.recv_bytes(sender, tag, max_len=16)
    if len(seed) != 16:
        raise ProtocolError(f"{sender} sent a {len(seed)}-byte seed for {tag!r}", peer=sender)
    return seed


def finish_predictions(spec: InferenceSpec, logits: np.ndarray) -> np.ndarray:
    """Logits to what the data owner asked for."""
    if spec.kind == ModelKind.LOGISTIC and spec.output == InferenceOutput.PREDICTION:
        return sigmoid(logits)
    return np.asarray(logits, dtype=np.float64)


# ---------------------------------------------------------------------------
# ckks: column packing, plaintext weights, no rotations
# ---------------------------------------------------------------------------

def _chunks(spec: InferenceSpec) -> int:
    slots = ckks.get_preset(spec.ckks_preset).slots
    return -(-spec.n_samples // slots)


def model_flood_std(spec: InferenceSpec, weights: np.ndarray) -> float:
    """Std of the noise the model owner adds to the encrypted logits (0 if disabled).

    ``2^flood_bits`` times a bound E on the CKKS error of the evaluation, which depends on
    the model (the data owner, who holds the key, could otherwise read ``sum_j w_j e_j``
    off the exact error it knows the ``e_j`` of):
    :meth:`smpc.ckks.Preset.error_bound` for the weights' L1 and L2 norms (and the
    encrypted sigmoid), and the weights' plaintext encoding error
    ``2^-(scale_bits+1) n_features feature_bound``.  For weights of L2 norm up to 4 and
    ``n_features * feature_bound`` up to 2^18 this is the preset's release bound: 2^-7 ~
    0.0078 on a logit for the default preset; it doubles for every doubling of ``||w||_2``
    beyond ``2^-23 / (3 err_fresh_pub)`` ~ 4.
    """
    if spec.flood_bits == 0:
        return 0.0
    preset = ckks.get_preset(spec.ckks_preset)
    w = np.asarray(weights, dtype=np.float64)
    e = preset.error_bound(weight_l1=float(np.abs(w).sum()),
                           weight_l2=float(np.sqrt((w * w).sum())),
                           sigmoid=spec.output == InferenceOutput.ENCRYPTED_SIGMOID,
                           independent=True)
    encoding = 2.0 ** -(preset.scale_bits + 1) * spec.n_features * spec.feature_bound
    e = max(e, 2.0 ** math.ceil(math.log2(encoding)) if encoding > 0 else 0.0)
    return 2.0**spec.flood_bits * e


#: Worker threads that encrypt and send the columns: TenSEAL releases the GIL while it encrypts
#: and gRPC while it sends, so encryption runs on every core and overlaps the sends.
ENCRYPT_WORKERS = 2


def run_data_owner_ckks(t: Transport, spec: InferenceSpec, X: np.ndarray, *, model_owner: str,
                        tag: str, holder: ckks.KeyHolder | None = None) -> np.ndarray:
    """The data owner as CKKS key holder: encrypts its columns, decrypts the logits.

    ``holder``: a key pair kept across requests (:class:`smpc.ckks.KeyCache`, one per analyst
    and model owner); None makes a fresh one for this request.  The public context is sent
    first, then the columns, each encrypted and sent by one of :data:`ENCRYPT_WORKERS` threads
    (:func:`_send_columns`; the model owner accumulates them as they arrive).  The predictions
    never leave this role (it is their only recipient).
    Under a fresh key the logits are decrypted as they are (the key dies with the request; the
    model owner's flood hides the evaluation noise that depends on its weights).  Under a kept
    key every decryption is released through :meth:`~smpc.ckks.KeyHolder.release` -- flooded
    with this key holder's own CSPRNG noise, not trusting the model owner's -- because raw
    decryptions of a ciphertext the model owner made would leak the key that also protects the
    other requests' features (Li-Micciancio; :mod:`smpc.ckks.keycache`).
    """
    t.check_cancelled()  # pragma: no mutate (liveness only)
    X = check_features(spec, X)
    kept = holder is not None
    if holder is None:
        holder = ckks.KeyHolder(spec.ckks_preset)
    elif holder.preset.name != ckks.get_preset(spec.ckks_preset).name:
        raise InputError(f"the kept key pair is for the {holder.preset.name!r} preset, "
                         f"not {spec.ckks_preset!r}")
    t.send(model_owner, f"{tag}/ctx", holder.public_context())
    _send_columns(t, holder, X, model_owner, tag)
    logits_cts = [t.recv_bytes(model_owner, f"{tag}/z/{k}", max_len=ckks.MAX_CIPHERTEXT_BYTES)
                  for k in range(_chunks(spec))]
    if kept:
        values = holder.decrypt_and_release(logits_cts, spec.n_samples)
    else:
        values = holder.decrypt(logits_cts, spec.n_samples)
    if spec.output == InferenceOutput.ENCRYPTED_SIGMOID:
        return np.asarray(values, dtype=np.float64)
    return finish_predictions(spec, values)


def _send_columns(t: Transport, holder: ckks.KeyHolder, X: np.ndarray, model_owner: str,
                  tag: str) -> None:
    """Column ``j``'s ciphertexts under ``{tag}/x/{j}/{k}``, each column encrypted and sent by
    one of :data:`ENCRYPT_WORKERS` threads as soon as it is ready, started in column order
    (the tags, not the order of arrival, say which column a message is).  The first failure is
    raised once every started column has finished; a cancelled role starts no more columns
    (``t.send`` checks before each message)."""
    def one(j: int) -> None:
        t.check_cancelled()  # pragma: no mutate (liveness only)
        for k, ct in enumerate(holder.encrypt(X[:, j])):
            t.send(model_owner, f"{tag}/x/{j}/{k}", ct)

    with ThreadPoolExecutor(max_workers=ENCRYPT_WORKERS,
                            thread_name_prefix="ckks-columns") as pool:
        futures = [pool.submit(one, j) for j in range(X.shape[1])]
        try:
            for f in futures:
                f.result()
        finally:
            for f in futures:
                f.cancel()


def run_model_owner_ckks(t: Transport, spec: InferenceSpec, model: LinearModel, *,
                         data_owner: str, tag: str, noise_std: float = 0.0) -> None:
    """The model owner: ``sum_j w_j ct_j + b`` on ciphertexts, flooded, sent back.  The flood's
    std is the larger of :func:`model_flood_std` and ``noise_std`` (the owner's prediction
    noise: a flood at least that large serves as both).  Each column is multiplied into the
    running sum as it arrives (:class:`smpc.ckks.LinearAccumulator`)."""
    t.check_cancelled()  # pragma: no mutate (liveness only)
    check_model(spec, model)
    model = model.folded()
    data = t.recv_bytes(data_owner, f"{tag}/ctx", max_len=ckks.MAX_CONTEXT_BYTES)
    try:
        ctx = ckks.load_context(data)
    except InputError as exc:  # the data owner's message, not this node's input
        raise ProtocolError(f"{data_owner} sent an invalid context: {exc}",
                            peer=data_owner) from None
    if ckks.context_preset(ctx).name != ckks.get_preset(spec.ckks_preset).name:
        raise ProtocolError(f"{data_owner} sent a context that is not the "
                            f"{spec.ckks_preset!r} preset", peer=data_owner)
    chunks = _chunks(spec)
    acc = ckks.LinearAccumulator(ctx, model.weights, model.intercept)
    for j in range(spec.n_features):
        acc.add([t.recv_bytes(data_owner, f"{tag}/x/{j}/{k}", max_len=ckks.MAX_CIPHERTEXT_BYTES)
                 for k in range(chunks)])
        t.check_cancelled()  # pragma: no mutate (liveness only)
    logits = acc.finish()
    t.check_cancelled()  # pragma: no mutate (liveness only)
    if spec.output == InferenceOutput.ENCRYPTED_SIGMOID:
        logits = ckks.sigmoid_poly3(ctx, logits)
    std = max(model_flood_std(spec, model.weights), float(noise_std))
    if std > 0:
        logits = ckks.flood_ciphertexts(ctx, logits, std)
    for k, ct in enumerate(logits):
        t.send(data_owner, f"{tag}/z/{k}", ct)


# ---------------------------------------------------------------------------
# Backend dispatch
# ---------------------------------------------------------------------------

def run_data_owner(t: Transport, spec: InferenceSpec, X: np.ndarray, *, model_owner: str,
                   dealer: str | None, tag: str,
                   holder: ckks.KeyHolder | None = None) -> np.ndarray:
    """The data owner's role on either backend; returns its predictions (``holder``: a kept
    CKKS key pair, see :func:`run_data_owner_ckks`; ignored by ``ss``)."""
    if spec.backend == Backend.SS:
        if dealer is None:
            raise InputError("ss inference needs a dealer")
        return run_data_owner_ss(t, spec, X, model_owner=model_owner, dealer=dealer, tag=tag)
    return run_data_owner_ckks(t, spec, X, model_owner=model_owner, tag=tag,
                               holder=holder)


def run_model_owner(t: Transport, spec: InferenceSpec, model: LinearModel, *, data_owner: str,
                    dealer: str | None, tag: str, noise_std: float = 0.0) -> None:
    """The model owner's role on either backend (``noise_std``: the Gaussian noise it adds to
    every logit it releases)."""
    if not (math.isfinite(noise_std) and noise_std >= 0):
        raise InputError("the prediction noise std must be a non-negative number")
    if spec.backend == Backend.SS:
        if dealer is None:
            raise InputError("ss inference needs a dealer")
        run_model_owner_ss(t, spec, model, data_owner=data_owner, dealer=dealer, tag=tag,
                           noise_std=noise_std)
    else:
        run_model_owner_ckks(t, spec, model, data_owner=data_owner, tag=tag,
                             noise_std=noise_std)


def run_dealer(t: Transport, spec: InferenceSpec, *, data_owner: str, model_owner: str,
               tag: str) -> None:
    """The dealer's role (``ss`` only; ``ckks`` inference needs no dealer)."""
    if spec.backend == Backend.SS:
        run_dealer_ss(t, spec, data_owner=data_owner, model_owner=model_owner, tag=tag)
