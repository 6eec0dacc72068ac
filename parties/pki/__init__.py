"""The federation's public-key infrastructure: identities, certificates, secret files.

Owns: who a certificate names (:mod:`.identity`), the CA and node certificates
(:mod:`.certs`), and writing keys and other secrets safely (:mod:`.files`).
May import: :mod:`parties.errors` and the core (``smpc``) -- nothing else of the runtime.

Security assumptions (state them to operators exactly like this):

* **The CA private key is the root of trust.** Whoever holds it can mint a certificate for any
  name and role. It is needed only to issue certificates: keep it offline (or at least off
  every node host), optionally encrypted with a passphrase (:func:`.certs.save_ca`). Nodes only
  ever need the CA *certificate*.
* A node's own private key is written with mode 0600 and never leaves its host; whoever can
  read it can impersonate that node.
* **Authentication is not authorisation.** A valid certificate only proves "this is node X with
  role R of this CA". Every server must then check the caller against the federation config,
  which is the allow-list (:meth:`parties.config.FederationConfig.authorize`).
* Every node certificate also names ``localhost`` and ``127.0.0.1``; clients therefore pin the
  expected node name (:func:`parties.transport.tls.channel_options`).
"""
