"""The Streamlit dashboard and the Gradio playground.

Not available in this release: the package is reserved so that ``labelloop.dashboard`` imports resolve.
"""
