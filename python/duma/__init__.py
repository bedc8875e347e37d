"""Duma's Python side: the model SDK (``duma.model``), the safe parameters format
(``duma.params``), the template runner (``python -m duma.runner``), the admin client
(``duma.client``) and Rafiki / SINGA-Auto import names (``duma.compat``)."""

__version__ = "0.1.0"
