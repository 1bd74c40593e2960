"""Middleware of the host project."""
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.messages.storage import default_storage
from django.utils.functional import SimpleLazyObject, empty


class LazyMessageMiddleware(MessageMiddleware):
    """Django's ``MessageMiddleware``, with each request's message storage made on first use.

    Django makes the storage (a cookie and a session store, with a cookie signer) for every
    request, then writes it back on the response. Only the admin's pages use messages; the API,
    the bulk of the traffic, never does: there the stock middleware cost ~0.1 ms of a
    recommendation request's ~5 ms of CPU (bench/serving.py). Pages that add or show messages
    behave exactly as with the stock middleware (the admin's system check accepts a subclass).
    """

    def process_request(self, request):
        request._messages = SimpleLazyObject(lambda: default_storage(request))

    def process_response(self, request, response):
        messages = getattr(request, "_messages", None)
        if isinstance(messages, SimpleLazyObject) and messages._wrapped is empty:
            return response  # never touched: nothing to store or clear
        return super().process_response(request, response)
