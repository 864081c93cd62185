"""The Streamlit dashboard (``labelloop dashboard``) and the Gradio playground (``labelloop playground``).

Pages live in ``app_pages/`` under ``st.navigation``; they render what the core computes
(:mod:`labelloop.quality.insights`, :mod:`labelloop.workflows`, the run registry) and hold no logic of their own.
"""
