"""Payments, not just webhooks: what an event says of a payment (design.md 5.7).

Pure: no I/O, no framework. ``amounts`` reads money exactly (integer minor units, a scale and
a currency, never a float); ``states`` orders a payment's states and decides what an event
does to them; ``rules`` is a source's ``payment:`` block, which reads a payment's facts from
an event's payload.
"""
