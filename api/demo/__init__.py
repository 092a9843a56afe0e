"""What only ``pii-vault demo`` and the tests need; the service never imports it.

``openbao`` starts a throwaway real OpenBao server, ``probes`` reads raw storage
to prove what is (not) there, ``story`` plays the demo over HTTP.
"""
