"""The injection guard: is this text trying to take over the assistant?"""
