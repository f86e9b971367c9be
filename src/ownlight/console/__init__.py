"""The Ownlight console: the web page ``ownlight serve`` answers at ``/`` for people
(chat over their documents) and for operators (what the gateway did, what left)."""
