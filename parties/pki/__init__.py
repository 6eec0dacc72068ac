"""The federation's public-key infrastructure: identities, certificates, secret files.

Owns: who a certificate names (:mod:`.identity`), the CA and node certificates
(:mod:`.certs`), certificate requests -- a node's key made on its own host, signed by the CA
without it (:mod:`.requests`) -- and writing keys and other secrets safely (:mod:`.files`).
May import: :mod:`parties.errors` and the core (``smpc``) -- nothing else of the runtime.

Security assumptions (state them to operators exactly like this):

* **The CA private key is the root of trust.** Whoever holds it can mint a certificate for any
  name and role -- which every node refuses for a name whose entry in the federation config
  pins another certificate. It is needed only to sign requests: keep it offline (or at least
  off every node host), optionally encrypted with a passphrase (:func:`.certs.save_ca`). Nodes
  only ever need the CA *certificate*.
* A node's own private key is made on its host (:func:`.requests.create_request`), written with
  mode 0600 and never leaves it; whoever can read it can impersonate that node until its
  certificate is revoked or re-pinned.
* **Authentication is not authorisation.** A valid certificate only proves "this is node X with
  role R of this CA". Every server must then check the caller against the federation config,
  which is the allow-list (:meth:`parties.config.FederationConfig.authorize`).
* Every node certificate also names ``localhost`` and ``127.0.0.1``; clients therefore expect
  the node's name (:func:`parties.transport.tls.channel_options`) and trust only the node's own
  verified certificate (:mod:`parties.transport.pinning`).
"""
