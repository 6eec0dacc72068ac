"""Equivalent surviving mutants of the core targets: id -> why no test can or should kill it."""

from __future__ import annotations

_DRAWS = ("random_below drawing another number of words per round: every round draws fresh "
          "CSPRNG words and keeps those below the bound, in order, so the output is the same "
          "exact rejection sample; only the number of rounds changes (efficiency, not privacy)")
_MASK64 = ("random_below's mask at bits == 64: (1 << 64) - 1 and 2**64 - 1 are the same "
           "all-ones mask, so taking either branch for a bound above 2**63 changes nothing")

_SEED_LEN = ("a length bound of 17 or none on a 16-byte seed: the transport checks max_len only "
             "after the whole message arrived, and the next line refuses every length but 16 "
             "with a ProtocolError naming the sender, so only the message's wording changes")
_UNREACHABLE_WHAT = ("the name of a model value in an encoding error that cannot happen: "
                     "check_model has already bounded (|w| + ulp)(bound + ulp) + |b| + ulp "
                     "below 2^(63-2f), so |w| < 2^(63-f) and |b| < 2^(63-2f) always encode")

_SEAL_128 = ("load_context's own 128-bit parameter check weakened or gone: defence in depth, "
             "no test can build such a context (SEAL refuses parameters beyond its 128-bit "
             "table: 'encryption parameters are not set correctly'), and context_preset, "
             "called next, refuses every context that is not a preset, all within the table")

_PUBLIC_TERM = ("party 1 instead of party 0 adding a public term to its share: the parties' "
                "shares still sum to the same value, and every party's share stays uniform "
                "(masked by the other parties' randomness)")

_PENDING = ("dealer truncation's initial 'pending' (another length or dtype): round 0 always "
            "replaces it with the indices of the rejected openings before it is read")

_SIGMOID_FALLBACK = ("err_sigmoid_ckks or 1.0: the fallback is unreachable, error_bound refuses "
                     "sigmoid=True on a preset without err_sigmoid_ckks before this line, and "
                     "every preset with one has a positive value")

_STRICT_SEEDS = ("ss_contribute's zip over the peers and their seeds without strict=True: "
                 "share_with_seeds(encoded, len(others)) returns exactly len(others) seeds, so "
                 "the two never differ in length and the check cannot fire (smpc/aggregate.py)")

_COUNT_DTYPE = ("a ciphertext count sent as np.array([n]) without dtype=np.int64: numpy's default "
                "integer is int64 under numpy 2 on every platform and under numpy 1 on every "
                "64-bit one but Windows, so the same int64 message is sent (smpc/aggregate.py)")

EQUIVALENT_CORE: dict[str, str] = {
    # randomness
    "5173936c3e": "keystream_into without encryptor.finalize(): CTR is a stream mode with no "
                  "padding, finalize writes no byte, and every byte was written by update_into",
    "1aeb821ecc": "expand's byte swap on a big-endian host deleted: the branch runs only where "
                  "sys.byteorder is 'big', and every platform the tests run on is little endian "
                  "(its condition negated is killed by the reference-keystream test)",
    "9d2bf17335": _MASK64,
    "11550717f2": _MASK64,
    "17f43d43ff": _DRAWS,
    "d4efd013d7": _DRAWS,
    "34b9933701": _DRAWS,
    "17e21153b1": _DRAWS,
    "ea2668f58d": _DRAWS,
    # sharing
    "42c17c9aa0": "np.array(shares[0], dtype=np.uint64) without copy=True: np.array copies by "
                  "default, so reconstruct still never adds into the caller's share",
    # inference
    "3342d85a06": _UNREACHABLE_WHAT,
    "41825d44df": _UNREACHABLE_WHAT,
    "b44ea2b979": _SEED_LEN,
    "04e3b09d51": _SEED_LEN,
    "5e09c1e3c5": "the encrypted-sigmoid branch falling through to finish_predictions, which "
                  "returns the same float64 values for any output but a logistic prediction",
    "083c34436e": "np.asarray of KeyHolder.decrypt's output without dtype=np.float64: decrypt "
                  "already returns a float64 array",
    "bf9bd16db2": "no length bound when receiving the context: load_context applies the same "
                  "MAX_CONTEXT_BYTES by default, and its refusal is reported as the data owner's "
                  "ProtocolError all the same",
    # ckks-release
    "08a56721f3": "csprng_gaussian drawing (count + 2) // 2 pairs: for an even count one more pair "
                  "is drawn; [:count] then keeps one fewer v-sample and one more u-sample, the "
                  "same i.i.d. normals",
    "07ed43bac5": "csprng_gaussian's buffer 3 * pairs long instead of 2 * pairs: the u and v "
                  "halves are written at the same offsets and [:count] reads only them",
    "a69cbf6bb5": "np.empty without dtype=np.float64: float64 is np.empty's default",
    "78a1985434": "the polar method keeping s >= 0 instead of s > 0: s = u^2 + v^2 is 0 only "
                  "for u = v = 0 exactly, two 53-bit words both equal to 2^52 (probability "
                  "2^-104 per pair), which no test can draw",
    "90ae80961b": "the polar method keeping s <= 1 instead of s < 1: s is exactly 1 only on "
                  "the few grid points of the unit circle (u = +-1 or v = +-1 with the other "
                  "0, probability about 2^-104 per pair), which no test can draw",
    "0c7e40e320": "serialize() without save_public_key=True: True is TenSEAL's default",
    "754d0675c7": "serialize() without save_secret_key=False: False is TenSEAL's default, so the "
                  "public context still carries no secret key",
    "e4e8dcbc1e": "serialize() without save_galois_keys=self.galois: a key holder without "
                  "galois=True never generated Galois keys, so there are none to save "
                  "(the bytes are identical), and with galois=True both save them",
    "42900fd4d6": "release subtracting the flood instead of adding it: the flood is a centred "
                  "Gaussian, so -flood has the same distribution",
    "43dfd0b59d": _SIGMOID_FALLBACK,
    "3e8d419d71": _SIGMOID_FALLBACK,
    "e16253651e": _SEAL_128,
    "b4784ceed2": _SEAL_128,
    # beaver
    "43e72145d2": "_beaver's own triple-kind check gone: TripleShare._consume, called before "
                  "anything is consumed or sent, refuses a triple of another kind with the same "
                  "InputError (a wrong shape is refused first by the next check)",
    "b1e31806f5": _PUBLIC_TERM,
    "7dda0e8795": _PENDING,
    "e5ca298a07": _PENDING,
    "8254d644f9": _PUBLIC_TERM,
    "c1fe1056ef": _PUBLIC_TERM,
    "abf5a0c16c": "_product checking a pair also for method 'local' or 'none', which never use "
                  "it: only a call passing a spent or mismatched pair it does not need is "
                  "refused (stricter, no opening and no result changes); no test should insist "
                  "that a useless wrong argument be accepted",
    "9f0a34c86f": "np.asarray(z) without dtype=np.uint64: z is a sum of uint64 arrays already",
    "27ef3464a3": "fold accumulating -R M instead of R M: -R is uniform exactly when R is, and "
                  "every party computes the same -R, so the check's soundness (2^-kappa) and "
                  "what it opens are unchanged (smpc/beaver/checking.py)",
    # dp: the full run (issue 9), judged survivors
    "75f9660257": "party_noise's zip(blocks, sigmas) without strict=True: lattice_sigmas returns "
                  "exactly one sigma per block of the same pass plan, so the lengths always "
                  "agree (smpc/dp/noise.py)",
    "41c7aa28d3": "lattice_sigmas' zip(blocks, sensitivities) without strict=True: sensitivities "
                  "returns one value per block of the same pass plan (smpc/dp/planning.py)",
    "8cc812ca36": "plan's final 'no differential-privacy plan for statistic' refusal dropped: "
                  "every Statistic is a count, sum, mean, two-pass or bin-count statistic, each "
                  "with its own branch, and a StatSpec names only a Statistic "
                  "(smpc/dp/planning.py)",
    "9b5609cab6": "'stat is not None or stat.two_pass' for 'and' in plan: stat is never None "
                  "there (a validated StatSpec names a Statistic), and the count, sum and mean "
                  "branches come first, so the two-pass branch takes the same statistics "
                  "(smpc/dp/planning.py)",
    "c01527f3ab": "_rho_from_epsilon's defensive refusal dropped: the lower end is the inverse "
                  "of Bun-Steinke's bound, which CKS20's conversion never exceeds, so it is "
                  "always feasible and the refusal unreachable (smpc/dp/accounting.py)",
    "3e46b09abb": "'>=' for '>' in _rho_from_epsilon's defensive feasibility check: CKS20's "
                  "epsilon is strictly below Bun-Steinke's at the lower end, so both "
                  "comparisons are false (smpc/dp/accounting.py)",
    "3aa35fd5b8": "201 for 200 bisection steps in _rho_from_epsilon: the relative 1e-12 "
                  "convergence test ends the loop after about 60 steps (smpc/dp/accounting.py)",
    "bbd59c8757": "the bisection's 'break' at convergence dropped: the remaining steps only "
                  "narrow [lo, hi] further, so the returned lo moves by less than the relative "
                  "1e-12 rho_from_epsilon promises (smpc/dp/accounting.py)",
    "69a1c50c3a": "reshape(-2) for reshape(-1) of the pass-2 shift: numpy reads any negative "
                  "size as the one unknown dimension (smpc/dp/planning.py)",
    "d8f1a10141": "reshape(-2, 2) for reshape(-1, 2) of the bounds in pass2_widths: numpy "
                  "reads any negative size as the one unknown dimension (smpc/dp/planning.py)",
    "d095a74bd2": "pass2_widths dropping dtype=float64 on the shift: an integer shift is "
                  "promoted to float64 by the arithmetic with the float64 bounds, and "
                  "np.isfinite accepts integers (smpc/dp/planning.py)",
    "7d0bb9ab39": "clip_rows dropping dtype=float64 on the rows: a party's rows are float64 "
                  "already (the table's columns), and np.clip against the float64 bounds "
                  "returns float64 for integer rows too (smpc/dp/planning.py)",
    "e9093f391b": "clip_rows dropping dtype=float64 on the bounds: DPRequest stores every bound "
                  "as a float, and np.clip of the float64 rows promotes integer bounds anyway "
                  "(smpc/dp/planning.py)",
    "39663ffdb6": "add_ring_noise dropping dtype=uint64 on the encoded vector: it is always the "
                  "codec's uint64 array, which np.asarray keeps as it is (smpc/dp/noise.py)",
    "9460afde60": "postprocess_pass1's np.array(..., copy=True) without copy=True: np.array "
                  "copies by default (smpc/dp/postprocess.py)",
    "35edb29ba9": "postprocess_shift dropping dtype=float64 on the shift: np.clip against the "
                  "float64 bounds returns float64 for an integer shift too "
                  "(smpc/dp/postprocess.py)",
    "7477b635a8": "postprocess_covariance dropping dtype=float64: (c + c.T) / 2.0 is float64 "
                  "for an integer matrix too, and eigh then sees the same matrix "
                  "(smpc/dp/postprocess.py)",
    "fbcc1263c2": "noisy_ckks_values dropping dtype=float64 on the noise: the grid-rounded "
                  "float64 values plus an integer or float noise array is the same float64 "
                  "sum (smpc/dp/noise.py)",
    "05e8a64a88": "lattice_sigmas' zip(blocks, sensitivities) without strict=True (the keyword "
                  "deleted): sensitivities returns one value per block of the same pass plan "
                  "(smpc/dp/planning.py)",
    "4a0caeffec": "pass2_widths dropping dtype=float64 on the bounds: DPRequest stores every "
                  "bound as a float, and the widths are float64 for integer bounds too "
                  "(smpc/dp/planning.py)",
    "e1b4956c49": "the bisection's convergence tolerance 2e-12 for 1e-12: rho_from_epsilon's "
                  "answer moves by at most 1e-12 relative, below what OpenDP's own "
                  "floating-point map resolves, so no budget comparison can tell "
                  "(smpc/dp/accounting.py)",
    "7d5d79eaf0": "'hi + lo' for 'hi - lo' in the bisection's convergence test: never true, so "
                  "the loop runs its 200 steps and stops at float precision, narrower than the "
                  "1e-12 relative it promises (smpc/dp/accounting.py)",
    "0aedbfd397": "epsilon_from_rho's early 'return 0.0' for rho = 0 dropped: OpenDP's "
                  "privacy profile of a map with distance 0 answers epsilon 0 as well "
                  "(smpc/dp/accounting.py)",
    "f47d41f068": "'<' for '<=' in _calibrate's 'room <= target / 2' refusal: the two differ "
                  "only when sqrt(d) tau is exactly half the target, a floating-point "
                  "coincidence (smpc/dp/planning.py)",
    "480ea74b2e": "'<' for '<=' when the bisection compares the midpoint's epsilon with the "
                  "target: they differ only when OpenDP's conversion of the midpoint equals "
                  "epsilon exactly, and then either half keeps the answer within 1e-12 "
                  "(smpc/dp/accounting.py)",
    "50f9fe72ab": "'<' for '<=' in the bisection's convergence test: they differ only when "
                  "hi - lo equals 1e-12 lo exactly, and one more halving keeps the answer within "
                  "the promised 1e-12 (smpc/dp/accounting.py)",
    "0ed5c6e52b": "delta_from_rho's early 'return 0.0' for rho = 0 dropped: OpenDP's privacy "
                  "profile of a map with distance 0 answers delta 0 as well "
                  "(smpc/dp/accounting.py)",
    "62fd0483b9": "postprocess_pass1 dropping dtype=float64: the noisy pass-1 sum it gets is "
                  "always the codec's float64 decode (ss) or the key holder's float64 release "
                  "(ckks), so the copy is float64 either way (smpc/dp/postprocess.py)",
    "5b01a415b2": "party_noise's zip(blocks, sigmas) with strict=True deleted: lattice_sigmas "
                  "returns exactly one sigma per block of the same pass plan "
                  "(smpc/dp/noise.py)",
    "265817b16b": "epsilon_from_rho's re-raise of an OpenDP error other than overflow dropped "
                  "(it would return inf instead): rho and delta are validated first, and for "
                  "those OpenDP's Gaussian profile fails only by overflow "
                  "(smpc/dp/accounting.py)",
    "2f32c2b32c": "delta_from_rho's re-raise of an OpenDP error other than overflow dropped "
                  "(it would return 1 instead): rho and epsilon are validated first, and for "
                  "those OpenDP's Gaussian profile fails only by overflow "
                  "(smpc/dp/accounting.py)",
    "dc8858b70e": "reshape(-2, 2) for reshape(-1, 2) of the bounds in clip_rows: numpy reads any "
                  "negative size as the one unknown dimension (smpc/dp/planning.py)",
    "02ef395d0f": "noisy_ckks_values dropping dtype=float64 on the values: divided by the float "
                  "grid, integer values give the same float64 result (smpc/dp/noise.py)",
    # dp, aggregate
    "5b608a4b54": "add_ring_noise's overflow test with z > 0 for z >= 0: the two differ only "
                  "at z = 0, where the total is the encoded value itself, so 'the total's sign "
                  "differs from the value's' is false either way and no overflow is flagged",
    "0ab63f726d": "_rho_from_epsilon's bisection starting from the Bun-Steinke inverse at "
                  "log(2/delta) instead of log(1/delta): a lower but still feasible start, and "
                  "the bisection still stops at the largest feasible rho within 1e-12 relative, "
                  "so the charge never exceeds the request and differs only below that "
                  "tolerance (smpc/dp/accounting.py)",
    "1e756031f8": "add_ring_noise's overflow test reading (z >= 1) for (z >= 0): they differ "
                  "only at z == 0, where enc + 0 cannot overflow and the flag's other factor "
                  "is false (smpc/dp/noise.py)",
    "f0c06204e0": "postprocess_shift dropping dtype=float64 on the plan's bounds: DPRequest "
                  "stores every bound as a float, and np.clip promotes int bounds to the "
                  "float shift anyway, so the clamped shift is the same (smpc/dp/postprocess.py)",
    "a2a973adb4": "ss_contribute dropping dtype=float64 on its values: they go only to "
                  "codec.encode, which converts them with np.asarray(values, dtype=np.float64) "
                  "itself (smpc/aggregate.py)",
    "a4d1380177": _STRICT_SEEDS,
    "d05adeab2c": _STRICT_SEEDS,
    "bf4a81ad38": "ckks_contribute dropping dtype=float64 on its values: encrypt_public_stream "
                  "converts them with np.asarray(values, dtype=np.float64) itself (_as_vector), "
                  "and every caller passes a float64 aggregate (smpc/aggregate.py)",
    "c9eb83e070": _COUNT_DTYPE,
    "f76ec3e7cc": _COUNT_DTYPE,
    "bc041d3dbc": "ckks_collect's default summands 1 -> 2: Preset.error_bound rounds E up to a "
                  "power of two and never below release_error_bound, which for 1 and 2 "
                  "independent summands is the same E on every preset (checked for aggregate, "
                  "rotate, sigmoid, long), so the same flood (smpc/aggregate.py)",
    "5dc35af5f6": "ss_contribute's seed received without max_len=16: the transport checks max_len "
                  "only after the whole message arrived, and the next line refuses every length "
                  "but 16 with a ProtocolError naming the sender, so only the message's wording "
                  "changes (test_aggregate_guards.py checks both)",
    "118237f31f": "run_party's default min_cell_size 0 -> 1: both of its uses treat every value "
                  "<= 1 alike (the DP refusal needs > 1, suppress_small_cells returns the values "
                  "unchanged for <= 1), so the default suppresses nothing either way "
                  "(smpc/stats/roles.py)",
    "c764ecde76": "plan's unknown-backend refusal deleted: StatSpec (a frozen dataclass) already "
                  "refuses an unknown backend at construction and stores the parsed Backend, so "
                  "no StatSpec reaches plan with one (smpc/dp/planning.py)",
    # inference: the model owner's prediction noise (issue 12)
    "4bfa9d74ef": "run_model_owner_ss's default noise_std 0.0 -> 1.0: its only caller, "
                  "run_model_owner, always passes noise_std, so the default is never used",
    "c3bd1162a7": "run_model_owner_ckks's default noise_std 0.0 -> 1.0: its only caller, "
                  "run_model_owner, always passes noise_std, so the default is never used",
    "15e6e78035": "the model owner subtracting its prediction noise instead of adding it: the "
                  "noise is a centred discrete Gaussian, symmetric about 0, so z - N and z + N "
                  "have the same distribution (smpc/linear.py)",
    # stats-roles: the full run of issue 9
    "75da4dd549": "run_party's shift as np.asarray(raw) without dtype=np.float64: the lines "
                  "before admit only JSON numbers (int or float, never bool or text), so the "
                  "array is int64 or float64 and every later use (finiteness, x - shift, the "
                  "DP range check) gives the same values (smpc/stats/roles.py)",
    "432735d45b": "run_keyholder_ckks's pass_error with frac_bits 1 for 0: on ckks pass_error "
                  "never reads frac_bits (it is the ss codec's), so the bound is the same "
                  "(smpc/stats/roles.py)",
    "4a1a06b88d": "run_party's spread pass with pass_index 2 for 1: _contribute reads the pass "
                  "index only to add DP noise, and the spread pass runs only without DP "
                  "(plan None), so it is never read (smpc/stats/roles.py)",
    "196a6aebd3": "run_keyholder_ckks's pass-2 sigmas without divisor=rel.divisor: on ckks "
                  "moment_divisor is 1.0 (the plain centred sums are sent), the default of "
                  "NoisePlan.sigmas (smpc/stats/local.py)",
    "515b86a557": "run_keyholder_ckks's moment-pass pass_error with frac_bits 1 for 0: on ckks "
                  "pass_error never reads frac_bits (as 432735d45b, pass 1) "
                  "(smpc/stats/roles.py)",
    "d3fe2c71a1": "run_party's spread pass with pass_index 0 for 1: never read without DP (as "
                  "4a1a06b88d) (smpc/stats/roles.py)",
    "0e34c6b89c": "_contribute's 'plan is not None and noise is not None' as 'or': every caller "
                  "passes noise None exactly when plan is None (run_party draws noise only "
                  "under a plan; the spread pass passes both None), so the two tests agree "
                  "(smpc/stats/roles.py)",
}
