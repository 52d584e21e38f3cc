from monitor.cli import main

if __name__ == "__main__":  # `python -m monitor`: the same entry point as the `monitor` script
    raise SystemExit(main())
