"""`mercure run`: starts every installed service as a child process and keeps them running."""
