"""LISA chat application (Gradio); arrives with the chat-app issue."""
