"""Job entrypoints: thin modules over the library, runnable locally or with `ray job submit`."""
