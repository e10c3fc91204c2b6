"""`python -m services.bank`: run the bank service."""

from services.bank.main import main

main()
