def main() -> None:
    print("cronkeeper")
