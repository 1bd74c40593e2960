"""Candidates, filters, exposure policy and diversity: pure functions on arrays.

The pure core (:mod:`.segments`, :mod:`.policy`) never imports Django, so it can be
tested and benchmarked alone; the Django side maps admin rows and requests onto its
plain dataclasses.
"""
