from batch_assign.cli import main

main()
