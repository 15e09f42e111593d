from relevance.cli import main

main()
