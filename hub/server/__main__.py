from hub.server.cli import main

main()
