"""The dashboard's tabs: Overview, Pipeline and Performance, one module each."""
