"""L4 load balancing: TCPRoute/UDPRoute flows spread over backend sets.

``flows`` holds the shared values, ``algorithms`` picks a backend for a new flow (``maglev``
builds the consistent-hash table), ``conntrack`` keeps existing flows on their backend. These are
pure (no sockets, no clock reads); the data planes around them do the I/O.
"""
