"""Drivers: whole steps of a production run over many data units under MPI."""
