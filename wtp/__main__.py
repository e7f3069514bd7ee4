from wtp.cli import main

main()
