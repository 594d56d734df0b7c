"""Start the ranking API somewhere and wait until it answers: this machine or NVIDIA's NIM
container."""
