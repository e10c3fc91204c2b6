"""The issuing bank's rules, in plain Python: branches (A22.3), the financial account and its
identity compare (A4.4), production orders with their due dates (A22) and card numbers, and the
notice that a card is made (A7.1), and cards taken back and destroyed (A16.6, A21, A7.4).
Imports neither grpc nor sqlalchemy."""
