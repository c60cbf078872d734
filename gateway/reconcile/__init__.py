"""Reconciliation (design.md 5.8): ask each provider what it knows, compare it with what the
gateway has, and recover through the normal pipeline what never arrived."""
