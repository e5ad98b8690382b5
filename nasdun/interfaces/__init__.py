"""The faces: the Python API (one function per command) and the command line that parses, calls it and prints."""
