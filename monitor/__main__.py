from monitor.cli import main

if __name__ == "__main__":  # a worker process (multiprocessing spawn) imports this module too
    raise SystemExit(main())
