"""Labeling sources for fine-grained entity typing on OntoNotes (3-level type hierarchy).

Written for ``benchmarks/entity_typing.py`` and developed on the ``dev`` mentions only. Each
source looks at one mention (its tokens, head word, a little context) and votes one type at
one level of the hierarchy, or abstains: some vote only the coarse level (``/person``), some
only a fine one (``/person/political_figure``), which implies its ancestors. The word lists are
written here by hand; the coarse NER tagger is spaCy's ``en_core_web_sm`` run on the given
tokens.
"""
