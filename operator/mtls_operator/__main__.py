from mtls_operator.cli import main

main()
