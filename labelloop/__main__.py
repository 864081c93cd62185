from labelloop.cli import main

main()
