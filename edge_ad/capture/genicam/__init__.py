"""GigE Vision and USB3 Vision cameras through Aravis (GenICam): source, features, discovery.

Aravis and PyGObject come with the ``genicam`` extra and Debian's ``gir1.2-aravis-0.8``; nothing here is
imported by a station that has no ``genicam://`` source.
"""
