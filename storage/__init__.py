"""sharemig's plain-Python core: state, pools, drivers and the data mover (no Prefect here)."""
